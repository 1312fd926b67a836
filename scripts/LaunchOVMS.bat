@echo off
rem LaunchOVMS model ip port [ovms-version] [CPU or GPU or FPGA] [--api kserve or tfs] [--dry-run]: one model server.
rem Thin wrapper: the logic is in scripts\tooling\ovms.py (same for LaunchOVMS.sh).
setlocal
set "ROOT=%~dp0.."
set "PY=%ROOT%\.venv\Scripts\python.exe"
if not exist "%PY%" set "PY=python"
set "PYTHONPATH=%ROOT%;%PYTHONPATH%"
"%PY%" -m scripts.tooling.ovms one %*
exit /b %ERRORLEVEL%
