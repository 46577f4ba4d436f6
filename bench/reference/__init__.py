"""Reference queues for the comparison; each module runs in bench/.venv, never in the product venv."""
