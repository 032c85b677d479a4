"""The keys service: key custody, envelope-encryption wraps, blind indexes and signatures."""
