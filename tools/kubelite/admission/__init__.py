"""Admission for kubelite, one module per plugin as kube-apiserver's admission plugins.

Owns nothing itself: `chain` runs, per resource, API defaulting, the
mutating plugins (`serviceaccount`, `tolerationseconds`) and validation
(`podvalidation`, `objects`), with the wording of `fielderrors`;
`noderestriction` confines node identities.  Reads other objects only through
the read-only `view`; errors are `AdmissionError` (a kubelite `ApiError`):
422 Invalid with `details.causes`, 403 Forbidden, 400 BadRequest.
"""

from __future__ import annotations

from .chain import admit_create, admit_update, default_pod_spec
from .fielderrors import AdmissionError
from .serviceaccount import TOKEN_MOUNT_PATH

__all__ = ["AdmissionError", "admit_create", "admit_update", "default_pod_spec", "TOKEN_MOUNT_PATH"]
