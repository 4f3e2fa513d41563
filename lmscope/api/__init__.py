"""The JSON HTTP API: routes only, over one `Service` (`create_blueprint`); the web server
(`lmscope.web.server`) mounts them."""

from .routes import create_blueprint

__all__ = ["create_blueprint"]
