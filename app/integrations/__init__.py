"""Adapters that let other systems ask the service in their own formats."""
