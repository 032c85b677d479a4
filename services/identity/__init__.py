"""The identity service: organisations, systems, practitioners, memberships, care teams."""
