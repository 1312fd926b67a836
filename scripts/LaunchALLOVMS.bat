@echo off
rem LaunchALLOVMS ip [--port 9000] [--per-model] [--api kserve or tfs] [--dry-run]: all models of models/config.json.
rem Thin wrapper: the logic is in scripts\tooling\ovms.py (same for LaunchALLOVMS.sh).
setlocal
set "ROOT=%~dp0.."
set "PY=%ROOT%\.venv\Scripts\python.exe"
if not exist "%PY%" set "PY=python"
set "PYTHONPATH=%ROOT%;%PYTHONPATH%"
"%PY%" -m scripts.tooling.ovms all %*
exit /b %ERRORLEVEL%
