"""The dashboard: a Dash app over the same library calls as the CLI and the JSON API."""
