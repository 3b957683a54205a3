"""Commands of ``python -m gan_lightning`` beyond LightningCLI's fit/validate/test/predict."""
