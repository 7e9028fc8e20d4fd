"""Medical domain: chest X-ray images paired with radiology reports (MGCA-style data)."""
