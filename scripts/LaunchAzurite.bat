@echo off
rem LaunchAzurite [--blob-port 10000] [--docker or --npm]: start Azurite (or find it), print the connection string.
rem Thin wrapper: the logic is in scripts\tooling\azurite.py (same for LaunchAzurite.sh).
setlocal
set "ROOT=%~dp0.."
set "PY=%ROOT%\.venv\Scripts\python.exe"
if not exist "%PY%" set "PY=python"
set "PYTHONPATH=%ROOT%;%PYTHONPATH%"
"%PY%" -m scripts.tooling.azurite %*
exit /b %ERRORLEVEL%
