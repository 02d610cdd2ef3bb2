# Where does fused_rnn.mm's ValueError crash? (device call 1: segfault in 3 xdist workers)
PY=.venv/bin/python
for pre in "" "torch.ops.fused_rnn.mm(torch.ones(3, 2, device='cuda'), torch.ones(2, 2, device='cuda'));"; do
  echo "=== diag: prelude [$pre]"
  timeout 60 $PY -X faulthandler -c "import torch, fused_rnn; $pre
try:
    torch.ops.fused_rnn.mm(torch.ones(3), torch.ones(3, 2))
except ValueError as e:
    print('ValueError raised:', e)" 2>&1 | tail -5
  echo "diag rc=${PIPESTATUS[0]}"
done
echo "=== diag: pytest without xdist"
timeout 90 $PY -m pytest -q -p no:cacheprovider tests/test_mm.py 2>&1 | tail -4
echo "=== diag: gcc / libstdc++"
gcc --version | head -1; $PY -c "import torch; print(torch.__config__.show())" | grep -i "gcc\|cxx\|abi" | head -5
if ! timeout 60 $PY -c "import torch, fused_rnn
try:
    torch.ops.fused_rnn.mm(torch.ones(3), torch.ones(3, 2))
except ValueError:
    pass" > /dev/null 2>&1; then
  echo "=== diag: cuda-gdb backtrace"
  timeout 90 cuda-gdb -batch -ex run -ex bt --args $PY -c "import torch, fused_rnn; torch.ops.fused_rnn.mm(torch.ones(3), torch.ones(3, 2))" 2>&1 | grep -v "^\[New Thread\|^\[Thread" | tail -30
fi
