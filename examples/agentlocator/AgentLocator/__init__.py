"""AgentLocator: a small Twilio voice demo served by gunicorn.

The WSGI entry point is ``AgentLocator.main:app``.
"""
