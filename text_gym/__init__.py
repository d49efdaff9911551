"""text_gym: Gymnasium environments for language tasks.

Importing the package registers every env id::

    import gymnasium as gym, text_gym
    env = gym.make("TextTranslate-v0")
    envs = gym.make_vec("TextTranslate-v0", num_envs=64)   # the native TextVectorEnv
"""

from text_gym.env import TextEnv
from text_gym.registration import ENV_TABLE, env_ids, register_envs
from text_gym.tokenizers import ByteTokenizer, HFTokenizer, Tokenizer, WordTokenizer, load_tokenizer, save_tokenizer
from text_gym.vector_env import TextVectorEnv

register_envs()

__version__ = "0.1.0"
__all__ = [
    "ENV_TABLE",
    "ByteTokenizer",
    "HFTokenizer",
    "TextEnv",
    "TextVectorEnv",
    "Tokenizer",
    "WordTokenizer",
    "env_ids",
    "load_tokenizer",
    "register_envs",
    "save_tokenizer",
]
