FROM busybox@sha256:d366a4665ab44f0648d7a00ae3fae139d55e32f9712c67accd604bb55df9d05a
# busybox
SHELL [ "/bin/sh", "-c" ]
ENV TEST="/test"
RUN mkdir /test && chown 1:1 /test
USER 1:1
RUN whoami
COPY --chown=1:1 test-file test-dir test-link /test/
WORKDIR /test
RUN ls -lR $TEST
