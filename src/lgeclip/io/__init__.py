"""Reading and writing the files that stages exchange: DICOM studies, cohort manifests, slice arrays."""
