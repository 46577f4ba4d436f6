"""jobq for applications: `jobq.client` (the HTTP API's Python client) and `jobq.testing` (an in-process
stack for an application's tests). Nothing is imported here, so `import jobq.client` loads only the client."""
