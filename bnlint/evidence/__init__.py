"""Evidence and provenance: what a reviewer needs to reproduce a report and to trust it
(file digests, the resolved configuration, reruns)."""
