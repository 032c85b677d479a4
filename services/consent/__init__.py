"""The consent service: the patient's consent, checked at every send and every read."""
