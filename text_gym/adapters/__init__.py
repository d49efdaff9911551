"""Adapters that let external agents and frameworks train on text_gym's envs.

Each adapter is a subpackage that imports its framework itself, so importing
``text_gym`` or ``text_gym.adapters`` needs no extra; importing an adapter without its
framework fails with an ``ImportError`` naming the extra to install.

* ``text_gym.adapters.sb3`` (``pip install 'text_gym[sb3]'``): Stable-Baselines3. The
  native vector env as an SB3 ``VecEnv`` (``to_vec_env``), a token-embedding features
  extractor for SB3's own policies (``TokenEmbedding``), a reference model's top-p
  action masks for sb3-contrib's ``MaskablePPO`` (``TopPMasks``), and an actor-critic
  policy whose actor is a causal language model (``LMActorCriticPolicy``).
* ``text_gym.adapters.trl`` (``pip install 'text_gym[trl]'``): TRL. A reward function
  with TRL's signature and a prompt dataset, for ``GRPOTrainer`` and any agent that
  writes whole completions.

See docs/adapters/.
"""
