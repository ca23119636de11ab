from typing import Annotated

from fastapi import Depends, Path

from app.db import SessionDep
from app.models import System
from app.systems import service as system_service

KeyPath = Annotated[str, Path(max_length=63, description="The system's key.")]


def get_system_or_404(key: KeyPath, session: SessionDep) -> System:
    return system_service.get_system(session, key)


def get_system_for_update(key: KeyPath, session: SessionDep) -> System:
    return system_service.get_system(session, key, for_update=True)


SystemDep = Annotated[System, Depends(get_system_or_404)]
LockedSystemDep = Annotated[System, Depends(get_system_for_update)]
