"""Shared pieces of the config sections: the strict, frozen base model and name rules."""
from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
