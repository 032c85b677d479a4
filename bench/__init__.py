"""`make bench`: medrelay's speed figures, each beside a floor measured in the same run."""
