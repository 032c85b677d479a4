"""medrelay: consent-checked, end-to-end encrypted exchange of health documents."""
