"""MLflow's model registry, through its webhooks: an alias set on a model version asks the gate
of the stage it stands for (docs/integrations/mlflow.md). `signature` verifies a delivery,
`service` acts on it in the unit of work, `client` calls MLflow back after the commit, and
`router` is the endpoint."""
