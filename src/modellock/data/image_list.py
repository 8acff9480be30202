"""Transformed images from a list of loaders: what inference over clean or edited images reads."""

from __future__ import annotations

from torch.utils.data import Dataset


class ImageListDataset(Dataset):
    """Transformed images from a list of zero-argument loaders (clean or edited), for inference."""

    def __init__(self, loaders, transform):
        self.loaders, self.transform = loaders, transform

    def __len__(self) -> int:
        return len(self.loaders)

    def __getitem__(self, i):
        return self.transform(self.loaders[i]())
