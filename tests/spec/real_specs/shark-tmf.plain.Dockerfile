FROM ghcr.io/osgeo/gdal:ubuntu-small-3.6.4
RUN apt-get update -qqy && apt-get install -qy git wget libpq-dev python3-pip && rm -rf /var/lib/apt/lists/* && rm -rf /var/cache/apt/*
RUN useradd -ms /bin/bash -u 1000 tmf
WORKDIR /home/tmf/app
RUN chown -R tmf:tmf /home/tmf
USER 1000:1000
RUN mkdir /home/tmf/app/data
WORKDIR /home/tmf/app
