"""snf.image: the `snf-image` Ganeti OS provider (image deployment and customization;
the scripts Ganeti runs live in provider/)."""
