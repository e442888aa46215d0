"""Example applications that use otpserver the way a host application would."""
