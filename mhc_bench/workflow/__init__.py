"""The reproduction grid: profiles, cell configs and cell ids shared by Snakemake and the CLI."""
