"""The JSON HTTP API and the server-side state behind it (loaded models, stored analyses)."""
