"""A host application with two-factor login on otpserver: read it, run it, copy it.

    python -m examples.twofactor      # beside a running otpserver; see README "Two-factor login"

- `storage.py`: the host's tables (what a host keeps: a password hash and three values from
  otpserver on the user row, the devices it trusted, its sessions);
- `app.py`: the routes, with the sign-in sequence in its docstring;
- `pages.py`: the HTML forms;
- `config.py`: the environment it reads.

Every otpserver call goes through `otpserver.client.OtpClient`, and every approval's signed
result is checked with `OtpClient.verify_result` (PyJWT, through the server's JWKS) before
anyone is signed in. Install with `pip install 'otpserver[example]'`.
"""
