"""torch ``nn.Module`` definitions of the neural classifiers.

Imported only from inside the classifiers' methods (this module imports torch); kept at
module level so that fitted classifiers pickle.
"""
from __future__ import annotations

import torch
from torch import nn

PAD = 0


class KimCNN(nn.Module):
    """Embedding -> parallel 1-D convolutions + ReLU + max over time -> dropout -> linear."""

    def __init__(self, vocab_size, num_classes, embed_dim, num_kernels, kernel_heights, dropout,
                 embedding_matrix=None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        if embedding_matrix is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(torch.as_tensor(embedding_matrix))
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_kernels, k) for k in kernel_heights)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_kernels * len(kernel_heights), num_classes)

    def forward(self, input_ids=None, inputs_embeds=None):
        x = self.embedding(input_ids) if inputs_embeds is None else inputs_embeds
        x = x.transpose(1, 2)                                        # (b, e, L)
        h = torch.cat([torch.relu(c(x)).amax(dim=2) for c in self.convs], dim=1)
        return self.fc(self.dropout(h)), h


def masked_mean(hidden, attention_mask):
    """Mean of ``hidden`` over the positions where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class EncoderClassifier(nn.Module):
    """A transformers encoder, masked mean pooling, dropout and a linear head."""

    def __init__(self, encoder, num_classes, dropout):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_classes)

    def pooled(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        kwargs = {"attention_mask": attention_mask}
        if inputs_embeds is None:
            kwargs["input_ids"] = input_ids
        else:
            kwargs["inputs_embeds"] = inputs_embeds
        out = self.encoder(**kwargs).last_hidden_state
        return masked_mean(out, attention_mask)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        h = self.pooled(input_ids, attention_mask, inputs_embeds)
        return self.classifier(self.dropout(h)), h
