#!/usr/bin/env bash
# Setup for the Pathway peer of `make bench` (see bench/peers/CONTRACT.md): its venv
# .local/bench/pathway/venv with the versions pinned in requirements.txt.
source "$(dirname "$0")/../setup-lib.sh"
peer_init pathway requirements.txt
peer_is_ready '[ -x "$peer_python" ]'
peer_venv pathway
peer_done
