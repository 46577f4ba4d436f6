"""dashboard routes (issue 6): filled in by the operations work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
