"""`accelerate launch tests/distributed_child.py RECIPE STOP_AFTER [key=value ...]`: a training run that stops after
STOP_AFTER steps without a final artifact, like a killed job (tests/test_distributed.py resumes it)."""
import sys

from affectllm.train import load_recipe
from affectllm.train.loop import train

if __name__ == "__main__":
    train(load_recipe(sys.argv[1], sys.argv[3:]), stop_after=int(sys.argv[2]), progress=False)
