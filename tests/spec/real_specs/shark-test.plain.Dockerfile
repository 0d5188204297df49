FROM osgeo/gdal:ubuntu-small-3.6.3
RUN echo 'Something for the log!'
