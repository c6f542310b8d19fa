# Sourced by the scripts: one build cache outside the clone, shared by every checkout on the
# machine, so CI and re-runs reuse what an earlier build left.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rtb-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"
# pip installs console scripts (cmake) here on machines whose python comes from pyenv or --user
for dir in "$HOME/.local/bin" "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)"; do
  case ":$PATH:" in *":$dir:"*) ;; *) [ -n "$dir" ] && export PATH="$dir:$PATH" ;; esac
done
