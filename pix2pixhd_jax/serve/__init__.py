"""serve/: the interactive editor (`pix2pixhd-jax serve`).

Lives here: the editor's sessions, validation and edits without HTTP (`service`), its HTTP
layer and start-up (`http`), and its page (`page/`: plain HTML, JS and CSS).

Which parts it may import: docs/architecture.md ("Who may import whom"), the one statement of
the rules (tests/test_architecture.py holds the code to them).
"""

from pix2pixhd_jax.errors import ApiError
from pix2pixhd_jax.serve.http import (EditorHandler, create, is_loopback, list_test_scenes, load_page, make_server,
                                      serve)
from pix2pixhd_jax.serve.service import (EditorService, Limits, Session, check_instances, data_url,
                                         instances_from_labels, png_bytes)

__all__ = ["ApiError", "EditorHandler", "EditorService", "Limits", "Session", "check_instances", "create", "data_url",
           "instances_from_labels", "is_loopback", "list_test_scenes", "load_page", "make_server", "png_bytes",
           "serve"]
