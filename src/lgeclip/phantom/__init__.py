"""lgeclip.phantom layer (see docs/ARCHITECTURE.md §2): phantom CMR cohort generator.

Public API: ``generate_cohort(out, patients, seed, workers)`` (whole cohort), ``generate_patient(seed, index)``
(a ``PatientSpec``, no files), ``write_patient(spec, out)`` / ``write_study`` (one study + truth).
"""

from lgeclip.phantom.cohort import generate_cohort, stack_level, write_patient
from lgeclip.phantom.spec import PatientSpec, ScarSpec, generate_patient

write_study = write_patient

__all__ = ["PatientSpec", "ScarSpec", "generate_cohort", "generate_patient", "stack_level", "write_patient",
           "write_study"]
