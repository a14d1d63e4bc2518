# Sourced by the device-machine jobs (gpu_job.sh, probe_job.sh); needs $WORK.
# stage_data NAME...: copy each carried .data/NAME to $WORK/data/NAME (a later call on the same warm machine
# finds it there without carrying it again). install_wheels: the carried .whl/*.whl onto PYTHONPATH (or the
# copy an earlier call installed, when none is carried).
stage_data() {
  mkdir -p "$WORK/data"
  local d
  for d in "$@"; do
    if [ -d ".data/$d" ]; then rm -rf "$WORK/data/$d"; cp -r ".data/$d" "$WORK/data/$d"; fi
  done
}
install_wheels() {  # a later call on the same warm machine may leave .whl behind: the installed copy serves
  if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl || return 1
  elif [ ! -d /tmp/site/diffusers ]; then
    echo "no .whl/*.whl carried and none installed on this machine (carry .whl)" >&2; return 1
  fi
  export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
}
