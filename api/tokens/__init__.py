"""``POST /api/v1/auth/token``: user name and password in, bearer token out."""
