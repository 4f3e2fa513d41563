"""The web server: the one place that assembles the service, the API and the dashboard."""
