@echo off
rem stack [--no-bootstrap] [--dry-run]: bring up Azurite, the models, the model server and the functions host.
rem Thin wrapper: the logic is in scripts\tooling\stack.py (same for stack.sh).
setlocal
set "ROOT=%~dp0.."
set "PY=%ROOT%\.venv\Scripts\python.exe"
if not exist "%PY%" set "PY=python"
set "PYTHONPATH=%ROOT%;%PYTHONPATH%"
"%PY%" -m scripts.tooling.stack %*
exit /b %ERRORLEVEL%
