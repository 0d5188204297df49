FROM empty
RUN echo hello > hello.txt
RUN cat hello.txt
