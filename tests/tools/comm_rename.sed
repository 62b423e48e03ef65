# comm_rename.sed: sed -i -f tests/tools/comm_rename.sed FILE.c turns direct MPI calls into
# the communication layer's (src/core/comm.h: same arguments, one-rank world without MPI).
s/\bMPI_Comm_rank(/ens_comm_rank(/g
s/\bMPI_Comm_size(/ens_comm_size(/g
s/\bMPI_Wtime(/ens_comm_wtime(/g
s/\bMPI_Barrier(/ens_comm_barrier(/g
s/\bMPI_Abort(/ens_comm_abort(/g
s/\bMPI_Bcast(/ens_comm_bcast(/g
s/\bMPI_Allreduce(/ens_comm_allreduce(/g
s/\bMPI_Gather(/ens_comm_gather(/g
s/\bMPI_Allgather(/ens_comm_allgather(/g
s/\bMPI_Send(/ens_comm_send(/g
s/\bMPI_Recv(/ens_comm_recv(/g
s/\bMPI_Isend(/ens_comm_isend(/g
s/\bMPI_Iprobe(/ens_comm_iprobe(/g
s/\bMPI_Test(/ens_comm_test(/g
s/\bMPI_Wait(/ens_comm_wait(/g
s/\bMPI_Waitall(/ens_comm_waitall(/g
s/\bMPI_Comm_split_type(/ens_comm_split_type(/g
s/\bMPI_Comm_free(/ens_comm_free(/g
s/\bMPI_Comm_set_errhandler(/ens_comm_set_errhandler(/g
s/\bMPI_Get_processor_name(/ens_comm_processor_name(/g
s/\bMPI_Error_string(/ens_comm_error_string(/g
s/\bMPI_Win_allocate_shared(/ens_comm_win_allocate_shared(/g
s/\bMPI_Win_shared_query(/ens_comm_win_shared_query(/g
s/\bMPI_Win_fence(/ens_comm_win_fence(/g
s/\bMPI_Win_free(/ens_comm_win_free(/g
