"""Fine-tune a timm model to recognise painters.

    accelerate launch train.py --config configs/efficientnet_b0.yaml --data path/to/paintings
    python train.py --model resnet50 --data path/to/paintings --epochs 10 --freeze-backbone

All logic lives in tim/training.py; `tim train` is the same command.
"""
import sys

from tim.train_cli import main

if __name__ == "__main__":
    sys.exit(main())
