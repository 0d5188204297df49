FROM busybox
SHELL [ "/bin/sh", "-c" ]
RUN date
