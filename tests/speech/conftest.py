"""Fixtures of the speech tests."""

# The synthesised speech samples (session-scoped, slow to make): a conftest import makes the fixture
# available to every test here without each module importing a name that its parameters shadow.
from ..voice_samples import spoken  # noqa: F401
