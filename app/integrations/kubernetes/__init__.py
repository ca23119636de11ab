"""The Kubernetes validating admission webhook: AdmissionReview v1 in and out, over the
lifecycle's gate check (docs/integrations/kubernetes.md)."""
