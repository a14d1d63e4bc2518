# Sourced by the device-machine jobs (gpu_job.sh, probe_job.sh); needs $WORK.
# stage_data NAME...: copy each carried .data/NAME to $WORK/data/NAME (a later call on the same warm machine
# finds it there without carrying it again). install_wheels: the carried .whl/*.whl onto PYTHONPATH.
stage_data() {
  mkdir -p "$WORK/data"
  local d
  for d in "$@"; do
    if [ -d ".data/$d" ]; then rm -rf "$WORK/data/$d"; cp -r ".data/$d" "$WORK/data/$d"; fi
  done
}
install_wheels() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || return 1
  export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
}
