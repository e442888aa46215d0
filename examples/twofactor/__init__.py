"""A host application with two-factor login on otpserver: read it, run it, copy it.

    python -m examples.twofactor      # beside a running otpserver; see README "Two-factor login"

- `signin.py`: password, then a second factor, then "trust this device" (the sequence is in
  its docstring);
- `account.py`: the signed-in pages: authenticator set-up, backup codes, trusted devices;
- `storage.py`: the host's tables (what a host keeps: a password hash and three values from
  otpserver on the user row, the devices it trusted, its sessions);
- `web.py`: sessions and CSRF-checked forms; `pages.py`: the HTML; `config.py`: the
  environment it reads; `app.py`: the route table.

Every otpserver call goes through `otpserver.client.OtpClient`, and every approval's signed
result is checked with `OtpClient.verify_result` (PyJWT, through the server's JWKS) before
anyone is signed in. Install with `pip install 'otpserver[example]'`.
"""
