FROM base
# A test comment
WORKDIR /src
RUN command1
SHELL [ "/bin/sh", "-c" ]
RUN command2 && \
    command3
COPY a b c
COPY a b c
ENV DEBUG="1"
ENV ESCAPE="\"quote\\sla\\sh\""
USER 1:2
COPY --chown=1:2 a b c
