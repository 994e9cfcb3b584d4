"""The REPL agent that runs inside every sandbox. Standard library only, shipped as a bundle."""
