@echo off
rem GetModelList omz-version: list Open Model Zoo models of a release (latest, 2021.1, 2023.0).
rem Thin wrapper: the logic is in scripts\tooling\omz.py (same for GetModelList.sh).
setlocal
set "ROOT=%~dp0.."
set "PY=%ROOT%\.venv\Scripts\python.exe"
if not exist "%PY%" set "PY=python"
set "PYTHONPATH=%ROOT%;%PYTHONPATH%"
"%PY%" -m scripts.tooling.omz list %*
exit /b %ERRORLEVEL%
