import os
import sys

# Make helper modules here importable as top-level names (gunicorn_service).
sys.path.insert(0, os.path.dirname(__file__))
