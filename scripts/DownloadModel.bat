@echo off
rem DownloadModel model omz-version [precision]: fetch an OMZ model into models/intel or public/model/.
rem Thin wrapper: the logic is in scripts\tooling\omz.py (same for DownloadModel.sh).
setlocal
set "ROOT=%~dp0.."
set "PY=%ROOT%\.venv\Scripts\python.exe"
if not exist "%PY%" set "PY=python"
set "PYTHONPATH=%ROOT%;%PYTHONPATH%"
"%PY%" -m scripts.tooling.omz download %*
exit /b %ERRORLEVEL%
